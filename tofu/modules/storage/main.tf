locals {
  data_bucket = "${var.name_prefix}-data"
  dr_bucket   = "${var.name_prefix}-data-dr"
  log_bucket  = "${var.name_prefix}-logs"
  tags        = merge(var.tags, { "ordinal:managed-by" = "ordinal" })
}

# --- access logs --------------------------------------------------------------------------
resource "aws_s3_bucket" "logs" {
  bucket        = local.log_bucket
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      # S3 server access logging delivers only to SSE-S3 buckets.
      sse_algorithm = "AES256"
    }
  }
}

# S3 server access logging writes with the logging service principal, scoped to this
# account's data bucket.
data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = concat([aws_s3_bucket.data.arn], [for b in aws_s3_bucket.extra : b.arn])
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket     = aws_s3_bucket.logs.id
  policy     = data.aws_iam_policy_document.logs.json
  depends_on = [aws_s3_bucket_public_access_block.logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 400
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- the data bucket ----------------------------------------------------------------------
resource "aws_s3_bucket" "data" {
  bucket              = local.data_bucket
  object_lock_enabled = true
  force_destroy       = var.force_destroy
  tags                = local.tags
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${local.data_bucket}/"
  depends_on    = [aws_s3_bucket_policy.logs]
}

# GOVERNANCE by default: an operator with s3:BypassGovernanceRetention can still remove a
# mistaken object. Raw data and releases are written in COMPLIANCE mode (policy below).
resource "aws_s3_bucket_object_lock_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.governance_retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.data]
}

data "aws_iam_policy_document" "data" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Raw data and released bundles are immutable for their retention period, even for the
  # account root: every write there must carry COMPLIANCE-mode retention.
  statement {
    sid       = "RequireComplianceLock"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = [for p in var.compliance_prefixes : "${aws_s3_bucket.data.arn}/${p}*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:object-lock-mode"
      values   = ["COMPLIANCE"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  count      = var.apply_bucket_policy ? 1 : 0
  bucket     = aws_s3_bucket.data.id
  policy     = data.aws_iam_policy_document.data.json
  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  dynamic "rule" {
    for_each = var.lifecycle_tiers
    content {
      id     = "tier-${trimsuffix(replace(rule.key, "/", "-"), "-")}"
      status = "Enabled"
      filter {
        prefix = rule.key
      }
      dynamic "transition" {
        for_each = coalesce(rule.value.warm_days, 0) > 0 ? [rule.value.warm_days] : []
        content {
          days          = transition.value
          storage_class = "STANDARD_IA"
        }
      }
      dynamic "transition" {
        for_each = coalesce(rule.value.archive_days, 0) > 0 ? [rule.value.archive_days] : []
        content {
          days          = transition.value
          storage_class = "GLACIER"
        }
      }
      dynamic "expiration" {
        for_each = coalesce(rule.value.expire_days, 0) > 0 ? [rule.value.expire_days] : []
        content {
          days = expiration.value
        }
      }
      dynamic "noncurrent_version_expiration" {
        for_each = coalesce(rule.value.noncurrent_days, 0) > 0 ? [rule.value.noncurrent_days] : []
        content {
          noncurrent_days = noncurrent_version_expiration.value
        }
      }
    }
  }

  # Bucket-wide: parts of failed multipart uploads are billed until aborted.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# --- further buckets (the stack's MLflow artefacts, backups, releases) -------------------
resource "aws_s3_bucket" "extra" {
  for_each            = var.extra_buckets
  bucket              = "${var.name_prefix}-${each.key}"
  object_lock_enabled = each.value.lock_mode != null
  force_destroy       = var.force_destroy
  tags                = local.tags
}

resource "aws_s3_bucket_public_access_block" "extra" {
  for_each                = var.extra_buckets
  bucket                  = aws_s3_bucket.extra[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "extra" {
  for_each = var.extra_buckets
  bucket   = aws_s3_bucket.extra[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "extra" {
  for_each = var.extra_buckets
  bucket   = aws_s3_bucket.extra[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "extra" {
  for_each      = var.extra_buckets
  bucket        = aws_s3_bucket.extra[each.key].id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${var.name_prefix}-${each.key}/"
  depends_on    = [aws_s3_bucket_policy.logs]
}

# Set once, on the empty bucket: S3 (and the emulator) refuse a changed rule once objects
# exist under some configurations, and a shorter retention must not be applied silently.
resource "aws_s3_bucket_object_lock_configuration" "extra" {
  for_each = { for k, b in var.extra_buckets : k => b if b.lock_mode != null }
  bucket   = aws_s3_bucket.extra[each.key].id
  rule {
    default_retention {
      mode = each.value.lock_mode
      days = each.value.lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.extra]
}

resource "aws_s3_bucket_lifecycle_configuration" "extra" {
  for_each = var.extra_buckets
  bucket   = aws_s3_bucket.extra[each.key].id
  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    dynamic "noncurrent_version_expiration" {
      for_each = each.value.noncurrent_days != null ? [each.value.noncurrent_days] : []
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  depends_on = [aws_s3_bucket_versioning.extra]
}

# --- disaster recovery: a locked, versioned copy in another region ------------------------
resource "aws_s3_bucket" "dr" {
  provider            = aws.dr
  bucket              = local.dr_bucket
  object_lock_enabled = true
  force_destroy       = var.force_destroy
  tags                = local.tags
}

resource "aws_s3_bucket_public_access_block" "dr" {
  provider                = aws.dr
  bucket                  = aws_s3_bucket.dr.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "dr" {
  provider = aws.dr
  bucket   = aws_s3_bucket.dr.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "dr" {
  provider = aws.dr
  bucket   = aws_s3_bucket.dr.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "dr" {
  provider = aws.dr
  bucket   = aws_s3_bucket.dr.id
  rule {
    id     = "dr-archive"
    status = "Enabled"
    filter {}
    transition {
      days          = 30
      storage_class = "GLACIER"
    }
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  depends_on = [aws_s3_bucket_versioning.dr]
}

data "aws_iam_policy_document" "replication_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  name               = "${var.name_prefix}-s3-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "replication" {
  statement {
    sid       = "ReadSourceConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }
  statement {
    sid = "ReadSourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
  statement {
    sid       = "WriteReplicas"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.dr.arn}/*"]
  }
}

resource "aws_iam_role_policy" "replication" {
  name   = "replicate-to-dr"
  role   = aws_iam_role.replication.id
  policy = data.aws_iam_policy_document.replication.json
}

resource "aws_s3_bucket_replication_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  role   = aws_iam_role.replication.arn

  rule {
    id     = "all-to-dr"
    status = "Enabled"
    filter {}
    # Deletes are not replicated: the DR copy survives a mistaken or malicious delete.
    delete_marker_replication {
      status = "Disabled"
    }
    destination {
      bucket        = aws_s3_bucket.dr.arn
      storage_class = "STANDARD_IA"
    }
  }

  depends_on = [aws_s3_bucket_versioning.data, aws_s3_bucket_versioning.dr]
}
