# Plan/apply against mocked providers: no endpoint is needed.
mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::ordinal-test-data" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/ordinal-test-s3-replication" }
  }
}
mock_provider "aws" {
  alias = "dr"
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::ordinal-test-data-dr" }
  }
}

variables {
  name_prefix = "ordinal-test"
  dr_region   = "us-west-2"
}

run "layout_lock_and_replication" {
  command = apply

  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  assert {
    condition     = aws_s3_bucket.data.bucket == "ordinal-test-data" && aws_s3_bucket.data.object_lock_enabled
    error_message = "the data bucket must be named <prefix>-data with object lock"
  }
  assert {
    condition     = aws_s3_bucket_object_lock_configuration.data.rule[0].default_retention[0].mode == "GOVERNANCE"
    error_message = "the default retention must be GOVERNANCE"
  }
  assert {
    condition     = aws_s3_bucket_versioning.data.versioning_configuration[0].status == "Enabled" && aws_s3_bucket_versioning.dr.versioning_configuration[0].status == "Enabled"
    error_message = "both buckets must be versioned"
  }
  assert {
    condition     = length(aws_s3_bucket_lifecycle_configuration.data.rule) == 8
    error_message = "one lifecycle rule per prefix, plus the bucket-wide multipart abort"
  }
  assert {
    condition = alltrue([
      for r in aws_s3_bucket_lifecycle_configuration.data.rule : r.filter[0].prefix != "" if r.id != "abort-incomplete-uploads"
    ])
    error_message = "every data lifecycle rule is scoped to a prefix"
  }
  assert {
    condition     = aws_s3_bucket_replication_configuration.data.rule[0].destination[0].bucket == aws_s3_bucket.dr.arn
    error_message = "replication must target the DR bucket"
  }
  assert {
    condition     = aws_s3_bucket.dr.bucket == "ordinal-test-data-dr" && aws_s3_bucket.dr.object_lock_enabled
    error_message = "the DR bucket must be locked"
  }
  assert {
    condition     = length(aws_s3_bucket_policy.data) == 1
    error_message = "the bucket policy (TLS only, COMPLIANCE lock on raw and releases) is attached by default"
  }
  assert {
    condition     = output.compliance_prefixes == tolist(["datasets/raw/", "releases/"])
    error_message = "raw data and releases are the COMPLIANCE prefixes"
  }
}

run "rejects_archive_before_warm_minimum" {
  command = plan
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  variables {
    lifecycle_tiers = { "models/" = { warm_days = 30, archive_days = 40 } }
  }
  expect_failures = [var.lifecycle_tiers]
}

run "rejects_bad_prefix" {
  command = plan
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  variables {
    compliance_prefixes = ["/raw"]
  }
  expect_failures = [var.compliance_prefixes]
}

run "rejects_bad_name" {
  command = plan
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  variables {
    name_prefix = "Ordinal_Data"
  }
  expect_failures = [var.name_prefix]
}

run "extra_buckets_in_the_same_posture" {
  command = apply
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  variables {
    extra_buckets = {
      backups   = { lock_mode = "COMPLIANCE", lock_days = 14 }
      artifacts = { lock_mode = "GOVERNANCE", noncurrent_days = 90 }
      scratch   = {}
    }
  }
  assert {
    condition     = aws_s3_bucket.extra["backups"].bucket == "ordinal-test-backups" && aws_s3_bucket.extra["backups"].object_lock_enabled && !aws_s3_bucket.extra["scratch"].object_lock_enabled
    error_message = "extra buckets are named <prefix>-<key>, locked only when a mode is given"
  }
  assert {
    condition     = aws_s3_bucket_object_lock_configuration.extra["backups"].rule[0].default_retention[0].mode == "COMPLIANCE" && aws_s3_bucket_object_lock_configuration.extra["backups"].rule[0].default_retention[0].days == 14 && aws_s3_bucket_object_lock_configuration.extra["artifacts"].rule[0].default_retention[0].mode == "GOVERNANCE" && length(aws_s3_bucket_object_lock_configuration.extra) == 2
    error_message = "each locked extra bucket carries its own default retention"
  }
  assert {
    condition     = alltrue([for v in aws_s3_bucket_versioning.extra : v.versioning_configuration[0].status == "Enabled"]) && length(aws_s3_bucket_public_access_block.extra) == 3
    error_message = "every extra bucket is versioned and private"
  }
  assert {
    condition     = output.extra_bucket_locks["scratch"].mode == "NONE" && output.extra_bucket_locks["backups"].days == 14
    error_message = "the lock output reports each bucket's mode and days"
  }
}

run "rejects_bad_extra_bucket" {
  command = plan
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  variables {
    extra_buckets = { backups = { lock_mode = "LEGAL_HOLD" } }
  }
  expect_failures = [var.extra_buckets]
}
