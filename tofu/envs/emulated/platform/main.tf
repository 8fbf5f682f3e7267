# The long-lived platform on the emulated endpoint: a private network in two zones and one
# role per pipeline stage. The buckets are envs/emulated/storage (applied beside it; the
# roles only need the data bucket's ARN, which its name fixes).
# Applied by the tests and by `ordinal infra` against moto_server on loopback.
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

variable "ec2_endpoint" {
  description = "EC2 endpoint (the fault injector in front of moto); defaults to endpoint."
  type        = string
  default     = null
}

variable "region" {
  description = "Primary region."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of bucket and role names."
  type        = string
  default     = "ordinal"
}

variable "zones" {
  description = "Availability zones, one private subnet each (the spot fallback moves between them)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
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
    ec2 = coalesce(var.ec2_endpoint, var.endpoint)
    s3  = var.endpoint
    iam = var.endpoint
    sts = var.endpoint
  }
  default_tags {
    tags = local.tags
  }
}

resource "aws_vpc" "this" {
  cidr_block           = "10.42.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name_prefix}-compute" }
}

# The VPC's default group allows nothing: every instance gets a group of its own.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name_prefix}-default-deny" }
}

resource "aws_subnet" "private" {
  for_each                = { for i, z in var.zones : z => i }
  vpc_id                  = aws_vpc.this.id
  availability_zone       = each.key
  cidr_block              = cidrsubnet(aws_vpc.this.cidr_block, 8, each.value)
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name_prefix}-private-${each.key}" }
}

module "iam" {
  source          = "../../../modules/iam"
  name_prefix     = var.name_prefix
  data_bucket_arn = "arn:aws:s3:::${var.name_prefix}-data"
  tags            = local.tags
}

output "vpc_id" {
  description = "The compute VPC."
  value       = aws_vpc.this.id
}

output "subnets" {
  description = "Private subnet id per zone, in the order of var.zones."
  value       = [for z in var.zones : { zone = z, subnet_id = aws_subnet.private[z].id }]
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

output "policies" {
  description = "Policy document per stage."
  value       = module.iam.policies
}
