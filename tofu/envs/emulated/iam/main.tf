# The stage roles alone, for a data bucket given by ARN: `ordinal infra check` applies this
# to a throw-away emulated endpoint and evaluates the allow/deny tables against the policy
# documents as IAM stored them.
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
  description = "The emulated AWS endpoint (moto_server on loopback)."
  type        = string
  validation {
    condition     = can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.endpoint))
    error_message = "the emulated endpoint must be http://127.0.0.1:<port>: nothing here may leave loopback."
  }
}

variable "data_bucket_arn" {
  description = "ARN of the data bucket the roles are scoped to."
  type        = string
  default     = "arn:aws:s3:::ordinal-data"
}

variable "name_prefix" {
  description = "Prefix of role names."
  type        = string
  default     = "ordinal-check"
}

provider "aws" {
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true
  max_retries                 = 5
  endpoints {
    iam = var.endpoint
    sts = var.endpoint
  }
}

module "iam" {
  source          = "../../../modules/iam"
  name_prefix     = var.name_prefix
  data_bucket_arn = var.data_bucket_arn
}

output "role_names" {
  description = "Role name per stage."
  value       = module.iam.role_names
}

output "combined_roles" {
  description = "Roles carrying several stages' policies."
  value       = module.iam.combined_roles
}
