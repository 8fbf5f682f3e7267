# The storage layout on the emulated endpoint: data bucket, DR bucket in another region,
# access logs. A root of its own (state key platform/storage.tfstate) because the AWS
# provider spends about a minute polling S3 lifecycle configurations until they are stable:
# the network and roles (envs/emulated/platform) need not wait for it.
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
  description = "The emulated AWS endpoint (moto_server on loopback) for S3, IAM and STS."
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
  description = "Prefix of bucket and role names."
  type        = string
  default     = "ordinal"
}

locals {
  tags = { "ordinal:managed-by" = "ordinal", "ordinal:environment" = "emulated" }
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
  name_prefix   = var.name_prefix
  dr_region     = var.dr_region
  force_destroy = true
  # moto honours principal-* statements but not their conditions (see the variable).
  apply_bucket_policy = false
  tags                = local.tags
}

output "data_bucket" {
  description = "The data bucket."
  value       = module.storage.data_bucket
}

output "data_bucket_arn" {
  description = "ARN of the data bucket."
  value       = module.storage.data_bucket_arn
}

output "dr_bucket" {
  description = "The DR bucket."
  value       = module.storage.dr_bucket
}

output "dr_region" {
  description = "Region of the DR bucket."
  value       = var.dr_region
}
