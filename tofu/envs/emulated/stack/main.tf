# The control-plane stack's S3 on its own loopback emulator (`ordinal stack up`), made by
# the same storage module as a real account's: the data bucket in the data layer's layout
# (GOVERNANCE by default, lifecycle per prefix, replicated to a DR bucket), and the stack's
# MLflow artefact (GOVERNANCE), backup (COMPLIANCE) and release (COMPLIANCE) buckets.
# State: the stack's own S3, key stack/storage.tfstate, with its lock file.
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 6.0.0"
    }
  }
  backend "s3" {}
}

variable "endpoint" {
  description = "The stack's S3 endpoint (moto_server on loopback), also serving IAM and STS."
  type        = string
  validation {
    condition     = can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.endpoint))
    error_message = "the emulated endpoint must be http://127.0.0.1:<port>: nothing here may leave loopback."
  }
}

variable "region" {
  description = "Primary region."
  type        = string
  default     = "us-east-1"
}

variable "dr_region" {
  description = "Disaster-recovery region."
  type        = string
  default     = "us-west-2"
  validation {
    condition     = var.dr_region != "us-east-1"
    error_message = "dr_region must differ from the primary region."
  }
}

variable "name_prefix" {
  description = "Prefix of the bucket names (<prefix>-data, <prefix>-backups, ...)."
  type        = string
  default     = "ordinal"
}

variable "governance_retention_days" {
  description = "Default GOVERNANCE retention of the data and MLflow artefact buckets."
  type        = number
  default     = 7
}

variable "backup_retention_days" {
  description = "COMPLIANCE retention of every backup version (the stack's backup_retention_days)."
  type        = number
  default     = 7
}

variable "release_retention_days" {
  description = "COMPLIANCE retention of every version in the releases bucket."
  type        = number
  default     = 7
}

variable "fingerprint" {
  description = "Digest of the module code and these inputs, kept in the state so that `stack up` can tell an unchanged apply from a needed one without planning."
  type        = string
  default     = ""
}

locals {
  tags = { "ordinal:managed-by" = "ordinal", "ordinal:environment" = "stack" }
}

provider "aws" {
  region                      = var.region
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  max_retries                 = 5
  endpoints {
    s3  = var.endpoint
    iam = var.endpoint
    sts = var.endpoint
  }
  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias                       = "dr"
  region                      = var.dr_region
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  max_retries                 = 5
  endpoints {
    s3  = var.endpoint
    iam = var.endpoint
    sts = var.endpoint
  }
  default_tags {
    tags = local.tags
  }
}

module "storage" {
  source = "../../../modules/storage"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  name_prefix               = var.name_prefix
  dr_region                 = var.dr_region
  governance_retention_days = var.governance_retention_days
  force_destroy             = true
  # moto honours principal-* statements but not their conditions (see the variable).
  apply_bucket_policy = false
  extra_buckets = {
    "mlflow-artifacts" = { lock_mode = "GOVERNANCE", lock_days = var.governance_retention_days }
    "backups"          = { lock_mode = "COMPLIANCE", lock_days = var.backup_retention_days }
    "releases"         = { lock_mode = "COMPLIANCE", lock_days = var.release_retention_days }
  }
  tags = local.tags
}

output "data_bucket" {
  description = "The data bucket (storage root of runs on the stack)."
  value       = module.storage.data_bucket
}

output "dr_bucket" {
  description = "The DR bucket."
  value       = module.storage.dr_bucket
}

output "dr_region" {
  description = "Region of the DR bucket."
  value       = var.dr_region
}

output "log_bucket" {
  description = "The access-log bucket."
  value       = module.storage.log_bucket
}

output "buckets" {
  description = "Every bucket the stack uses, by role."
  value       = merge({ data = module.storage.data_bucket }, module.storage.extra_buckets)
}

output "locks" {
  description = "Object lock per bucket role: mode and default retention days."
  value = merge(
    { data = { mode = "GOVERNANCE", days = module.storage.governance_retention_days } },
    module.storage.extra_bucket_locks,
  )
}

output "compliance_prefixes" {
  description = "Prefixes of the data bucket written with COMPLIANCE retention."
  value       = module.storage.compliance_prefixes
}

output "lifecycle_tiers" {
  description = "Lifecycle tiers of the data bucket, per prefix."
  value       = module.storage.lifecycle_tiers
}

output "lifecycle_rule_ids" {
  description = "Lifecycle rule id per prefix."
  value       = module.storage.lifecycle_rule_ids
}

output "fingerprint" {
  description = "The fingerprint this state was applied with."
  value       = var.fingerprint
}
