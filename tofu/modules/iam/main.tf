locals {
  tags   = merge(var.tags, { "ordinal:managed-by" = "ordinal" })
  bucket = var.data_bucket_arn

  # What each stage may touch, by key prefix. `put_lock` prefixes are written with
  # COMPLIANCE-mode retention (the bucket policy refuses anything else there).
  access = {
    ingest = {
      read     = []
      write    = ["datasets/raw/"]
      delete   = []
      put_lock = ["datasets/raw/"]
    }
    preprocess = {
      read     = ["datasets/raw/"]
      write    = ["datasets/processed/"]
      delete   = []
      put_lock = []
    }
    train = {
      read     = ["datasets/processed/", "models/checkpoints/"]
      write    = ["models/checkpoints/", "models/trained/", "mlflow-artifacts/"]
      delete   = ["models/checkpoints/"]
      put_lock = []
    }
    export = {
      read     = ["models/trained/", "models/checkpoints/", "datasets/processed/"]
      write    = ["models/onnx/*/fp32/", "mlflow-artifacts/"]
      delete   = []
      put_lock = []
    }
    quantise = {
      read     = ["models/onnx/", "datasets/processed/"]
      write    = ["models/onnx/*/int8/", "mlflow-artifacts/"]
      delete   = []
      put_lock = []
    }
    release = {
      read     = ["models/onnx/"]
      write    = ["releases/"]
      delete   = []
      put_lock = ["releases/"]
    }
    backup = {
      read     = ["backups/"]
      write    = ["backups/"]
      delete   = ["backups/"]
      put_lock = []
    }
  }

  # VMs that run several stages in a row carry the union of those stages' policies (one
  # inline policy per stage on one role): the CPU VM runs export, parity and quantise.
  combined = {
    cpu = ["export", "quantise"]
  }
  combined_policies = merge([
    for name, stages in local.combined : { for s in stages : "${name}/${s}" => { role = name, stage = s } }
  ]...)

  # Prefixes only their owner may write, whatever else is attached to a role later.
  reserved = {
    "datasets/raw/" = "ingest"
    "releases/"     = "release"
  }

  policies = {
    for stage, a in local.access : stage => jsonencode({
      Version = "2012-10-17"
      Statement = concat(
        length(a.read) == 0 ? [] : [{
          Sid      = "Read"
          Effect   = "Allow"
          Action   = ["s3:GetObject", "s3:GetObjectVersion"]
          Resource = [for p in a.read : "${local.bucket}/${p}*"]
        }],
        [{
          Sid       = "List"
          Effect    = "Allow"
          Action    = ["s3:ListBucket"]
          Resource  = [local.bucket]
          Condition = { StringLike = { "s3:prefix" = [for p in distinct(concat(a.read, a.write)) : "${p}*"] } }
        }],
        length(setsubtract(a.write, a.put_lock)) == 0 ? [] : [{
          Sid      = "Write"
          Effect   = "Allow"
          Action   = ["s3:PutObject", "s3:AbortMultipartUpload"]
          Resource = [for p in setsubtract(a.write, a.put_lock) : "${local.bucket}/${p}*"]
        }],
        length(a.put_lock) == 0 ? [] : [{
          Sid       = "WriteLocked"
          Effect    = "Allow"
          Action    = ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"]
          Resource  = [for p in a.put_lock : "${local.bucket}/${p}*"]
          Condition = { StringEquals = { "s3:object-lock-mode" = "COMPLIANCE" } }
        }],
        length(a.delete) == 0 ? [] : [{
          Sid      = "Delete"
          Effect   = "Allow"
          Action   = ["s3:DeleteObject"]
          Resource = [for p in a.delete : "${local.bucket}/${p}*"]
        }],
        var.kms_key_arn == null ? [] : [{
          Sid      = "UseBucketKey"
          Effect   = "Allow"
          Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource = [var.kms_key_arn]
        }],
        [{
          Sid    = "NeverBypassLocks"
          Effect = "Deny"
          Action = [
            "s3:BypassGovernanceRetention",
            "s3:PutBucketObjectLockConfiguration",
            "s3:DeleteObjectVersion",
            "s3:PutBucketPolicy",
            "s3:DeleteBucketPolicy",
            "s3:PutLifecycleConfiguration",
            "s3:PutReplicationConfiguration",
          ]
          Resource = [local.bucket, "${local.bucket}/*"]
        }],
        [for prefix, owner in local.reserved : {
          Sid      = "Reserved${replace(title(replace(trimsuffix(prefix, "/"), "/", " ")), " ", "")}"
          Effect   = "Deny"
          Action   = ["s3:PutObject", "s3:PutObjectRetention", "s3:DeleteObject"]
          Resource = ["${local.bucket}/${prefix}*"]
        } if owner != stage],
      )
    })
  }
}

data "aws_iam_policy_document" "ec2_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "stage" {
  for_each             = local.access
  name                 = "${var.name_prefix}-${each.key}"
  description          = "ordinal pipeline stage ${each.key}: scoped to its prefixes"
  assume_role_policy   = data.aws_iam_policy_document.ec2_trust.json
  max_session_duration = 43200
  tags                 = merge(local.tags, { "ordinal:stage" = each.key })
}

resource "aws_iam_role_policy" "stage" {
  for_each = local.access
  name     = "${each.key}-storage"
  role     = aws_iam_role.stage[each.key].id
  policy   = local.policies[each.key]
}

resource "aws_iam_role" "combined" {
  for_each             = local.combined
  name                 = "${var.name_prefix}-${each.key}"
  description          = "ordinal VM running ${join(", ", each.value)}: the union of those stages' policies"
  assume_role_policy   = data.aws_iam_policy_document.ec2_trust.json
  max_session_duration = 43200
  tags                 = merge(local.tags, { "ordinal:stage" = join("+", each.value) })
}

resource "aws_iam_role_policy" "combined" {
  for_each = local.combined_policies
  name     = "${each.value.stage}-storage"
  role     = aws_iam_role.combined[each.value.role].id
  policy   = local.policies[each.value.stage]
}

resource "aws_iam_instance_profile" "combined" {
  for_each = local.combined
  name     = "${var.name_prefix}-${each.key}"
  role     = aws_iam_role.combined[each.key].name
  tags     = merge(local.tags, { "ordinal:stage" = join("+", each.value) })
}

resource "aws_iam_instance_profile" "stage" {
  for_each = local.access
  name     = "${var.name_prefix}-${each.key}"
  role     = aws_iam_role.stage[each.key].name
  tags     = merge(local.tags, { "ordinal:stage" = each.key })
}
