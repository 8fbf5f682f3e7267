# Plan-only tests against a mocked provider: no endpoint is needed.
mock_provider "aws" {}

variables {
  run_id                = "r20261130-abc"
  stage                 = "train"
  instance_type         = "g4dn.xlarge"
  market                = "spot"
  ami_id                = "ami-0123456789abcdef0"
  subnet_id             = "subnet-0123456789abcdef0"
  vpc_id                = "vpc-0123456789abcdef0"
  instance_profile_name = "ordinal-train"
  owner                 = "ml-platform@example.com"
  cost_centre           = "cc-1234"
  prefect_api_url       = "https://prefect.example.internal/api"
  max_lifetime_minutes  = 90
}

run "spot_training_vm" {
  command = plan

  assert {
    condition     = aws_instance.this.instance_market_options[0].market_type == "spot"
    error_message = "a spot VM must request the spot market"
  }
  assert {
    condition     = aws_instance.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required"
  }
  assert {
    condition     = aws_instance.this.root_block_device[0].encrypted == true
    error_message = "the root volume must be encrypted"
  }
  assert {
    condition     = aws_instance.this.instance_initiated_shutdown_behavior == "terminate"
    error_message = "shutdown must terminate the VM"
  }
  assert {
    condition     = aws_instance.this.iam_instance_profile == "ordinal-train"
    error_message = "the stage's instance profile must be attached"
  }
  assert {
    condition     = length(aws_security_group.worker.ingress) == 0
    error_message = "the worker's security group must have no inbound rule"
  }
  assert {
    condition = alltrue([
      for k in ["ordinal:run-id", "ordinal:stage", "ordinal:owner", "ordinal:cost-centre"] :
      contains(keys(aws_instance.this.tags), k)
    ])
    error_message = "run id, stage, owner and cost centre tags are required"
  }
  assert {
    condition     = aws_instance.this.tags["ordinal:run-id"] == "r20261130-abc" && aws_instance.this.tags["ordinal:stage"] == "train"
    error_message = "tags must carry the run id and stage"
  }
  assert {
    condition     = strcontains(output.user_data, "--work-queue 'run-r20261130-abc'")
    error_message = "the worker must poll the run's own queue"
  }
  assert {
    condition     = strcontains(output.user_data, "sleep $(( 90 * 60 ))")
    error_message = "the maximum-lifetime guard must use max_lifetime_minutes"
  }
  assert {
    condition     = strcontains(output.user_data, "export PREFECT_API_URL='https://prefect.example.internal/api'")
    error_message = "the worker must be pointed at the Prefect API"
  }
}

run "on_demand_cpu_vm" {
  command = plan

  variables {
    stage                 = "export"
    instance_type         = "c6i.xlarge"
    market                = "on-demand"
    instance_profile_name = "ordinal-export"
    work_queue            = "custom-queue"
    worker_env            = { ORDINAL_STORAGE_URL = "s3://b/p", QUOTED = "it's" }
  }

  assert {
    condition     = length(aws_instance.this.instance_market_options) == 0
    error_message = "an on-demand VM must not request spot"
  }
  assert {
    condition     = strcontains(output.user_data, "--work-queue 'custom-queue'")
    error_message = "an explicit work queue must be used"
  }
  assert {
    condition     = strcontains(output.user_data, "export QUOTED='it'\\''s'")
    error_message = "worker_env values must be single-quoted safely"
  }
}

run "rejects_unknown_instance_type" {
  command = plan
  variables {
    instance_type = "p5.48xlarge"
  }
  expect_failures = [var.instance_type]
}

run "rejects_unknown_market" {
  command = plan
  variables {
    market = "reserved"
  }
  expect_failures = [var.market]
}

run "rejects_bad_lifetime" {
  command = plan
  variables {
    max_lifetime_minutes = 1
  }
  expect_failures = [var.max_lifetime_minutes]
}

run "rejects_bad_stage" {
  command = plan
  variables {
    stage = "deploy"
  }
  expect_failures = [var.stage]
}

run "rejects_bad_run_id" {
  command = plan
  variables {
    run_id = "Run_With Spaces"
  }
  expect_failures = [var.run_id]
}
