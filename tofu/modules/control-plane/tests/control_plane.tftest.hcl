mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db", kms_key_id = "", secret_status = "active" }]
    }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/ordinal-rds-monitoring" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tls" }
  }
}

variables {
  vpc_id          = "vpc-0123456789abcdef0"
  subnet_ids      = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  private_cidrs   = ["10.0.0.0/8"]
  ami_id          = "ami-0123456789abcdef0"
  data_bucket_arn = "arn:aws:s3:::ordinal-data"
  domain          = "ml.example.internal"
}

run "private_encrypted_tls_only" {
  command = apply

  assert {
    condition     = aws_db_instance.this.publicly_accessible == false && aws_db_instance.this.storage_encrypted
    error_message = "the database is private and encrypted"
  }
  assert {
    condition     = aws_db_instance.this.manage_master_user_password == true
    error_message = "the admin password is managed by Secrets Manager, never in state"
  }
  assert {
    condition     = one([for p in aws_db_parameter_group.this.parameter : p.value if p.name == "rds.force_ssl"]) == "1"
    error_message = "PostgreSQL must require TLS"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_host.referenced_security_group_id == aws_security_group.host.id
    error_message = "PostgreSQL accepts the host only"
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.host_https : r.from_port == 443 && r.to_port == 443])
    error_message = "the host accepts HTTPS only"
  }
  assert {
    condition     = aws_instance.host.metadata_options[0].http_tokens == "required" && aws_instance.host.root_block_device[0].encrypted
    error_message = "IMDSv2 and an encrypted root volume"
  }
}

run "rejects_open_world" {
  command = plan
  variables {
    private_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.private_cidrs]
}

run "rejects_single_subnet" {
  command = plan
  variables {
    subnet_ids = ["subnet-0123456789abcdef0"]
  }
  expect_failures = [var.subnet_ids]
}
