mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name_prefix     = "ordinal-test"
  data_bucket_arn = "arn:aws:s3:::ordinal-test-data"
}

run "one_role_per_stage_no_wildcard_actions" {
  command = plan

  assert {
    condition     = output.stages == tolist(["backup", "export", "ingest", "preprocess", "quantise", "release", "train"])
    error_message = "one role per stage"
  }
  assert {
    condition = alltrue(flatten([
      for s, doc in output.policies : [
        for st in jsondecode(doc).Statement : [for a in st.Action : !strcontains(a, "*")]
      ]
    ]))
    error_message = "no action may contain a wildcard"
  }
  assert {
    condition = alltrue(flatten([
      for s, doc in output.policies : [
        for st in jsondecode(doc).Statement : [for r in st.Resource : startswith(r, "arn:aws:s3:::ordinal-test-data")]
      ]
    ]))
    error_message = "every statement is scoped to the data bucket"
  }
  assert {
    condition     = !strcontains(output.policies["release"], "ReservedReleases") && strcontains(output.policies["train"], "ReservedReleases")
    error_message = "every stage but release is denied writes to releases/"
  }
  assert {
    condition     = aws_iam_instance_profile.stage["train"].name == "ordinal-test-train"
    error_message = "instance profiles are named <prefix>-<stage>"
  }
  assert {
    condition     = jsonencode(output.combined_roles) == jsonencode({ "ordinal-test-cpu" = ["export", "quantise"] })
    error_message = "the CPU VM's role carries export and quantise"
  }
  assert {
    condition     = aws_iam_role_policy.combined["cpu/quantise"].policy == output.policies["quantise"]
    error_message = "a combined role carries each stage's own policy unchanged"
  }
}

run "kms_key_scoped" {
  command = plan
  variables {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }
  assert {
    condition     = strcontains(output.policies["train"], "kms:Decrypt") && !strcontains(output.policies["train"], "\"kms:*\"")
    error_message = "with a key, roles may use that key only"
  }
}

run "rejects_non_bucket_arn" {
  command = plan
  variables {
    data_bucket_arn = "ordinal-test-data"
  }
  expect_failures = [var.data_bucket_arn]
}
