# A real account's long-lived platform: storage layout with DR replication, and one role per
# stage. The network (VPC, private subnets with a NAT or VPC endpoints) is the account's
# own and is passed in. Validated and planned in tests, never applied by them.
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

variable "account_id" {
  description = "The only AWS account this root may touch (guards against the wrong credentials)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "region" {
  description = "Primary region."
  type        = string
  default     = "us-east-1"
}

variable "dr_region" {
  description = "Disaster-recovery region (must differ from region)."
  type        = string
  default     = "us-west-2"
}

variable "name_prefix" {
  description = "Prefix of bucket and role names (bucket names are global: make it unique)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the data bucket; null uses aws/s3."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags on everything (owner, cost centre)."
  type        = map(string)
  default     = {}
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]
  default_tags {
    tags = merge(var.tags, { "ordinal:managed-by" = "ordinal" })
  }
}

provider "aws" {
  alias               = "dr"
  region              = var.dr_region
  allowed_account_ids = [var.account_id]
  default_tags {
    tags = merge(var.tags, { "ordinal:managed-by" = "ordinal" })
  }
}

module "storage" {
  source = "../../../modules/storage"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }
  name_prefix = var.name_prefix
  dr_region   = var.dr_region
  kms_key_arn = var.kms_key_arn
  tags        = var.tags
}

module "iam" {
  source          = "../../../modules/iam"
  name_prefix     = var.name_prefix
  data_bucket_arn = module.storage.data_bucket_arn
  kms_key_arn     = var.kms_key_arn
  tags            = var.tags
}

output "data_bucket" {
  description = "The data bucket (ORDINAL_STORAGE_URL=s3://<it>)."
  value       = module.storage.data_bucket
}

output "dr_bucket" {
  description = "The DR bucket."
  value       = module.storage.dr_bucket
}

output "instance_profiles" {
  description = "Instance profile per stage."
  value       = module.iam.instance_profiles
}

output "role_names" {
  description = "Role name per stage."
  value       = module.iam.role_names
}

output "combined_roles" {
  description = "Roles carrying several stages' policies (cpu: export + quantise)."
  value       = module.iam.combined_roles
}
