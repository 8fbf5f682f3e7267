# The control plane in a real account: RDS PostgreSQL, the Prefect/MLflow host, its TLS
# secret. Validated and planned in tests, never applied by them.
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
  description = "The only AWS account this root may touch."
  type        = string
}

variable "region" {
  description = "Region."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of names."
  type        = string
  default     = "ordinal"
}

variable "vpc_id" {
  description = "VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in two zones or more."
  type        = list(string)
}

variable "private_cidrs" {
  description = "Private network allowed to reach HTTPS."
  type        = list(string)
}

variable "ami_id" {
  description = "Image of the host."
  type        = string
}

variable "data_bucket_arn" {
  description = "Data bucket ARN (platform root's output)."
  type        = string
}

variable "domain" {
  description = "DNS suffix of the services."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key or null."
  type        = string
  default     = null
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]
  default_tags {
    tags = { "ordinal:managed-by" = "ordinal" }
  }
}

module "control_plane" {
  source          = "../../../modules/control-plane"
  name_prefix     = var.name_prefix
  vpc_id          = var.vpc_id
  subnet_ids      = var.subnet_ids
  private_cidrs   = var.private_cidrs
  ami_id          = var.ami_id
  data_bucket_arn = var.data_bucket_arn
  domain          = var.domain
  kms_key_arn     = var.kms_key_arn
}

output "db_address" {
  description = "PostgreSQL endpoint."
  value       = module.control_plane.db_address
}

output "host_private_ip" {
  description = "Host address."
  value       = module.control_plane.host_private_ip
}

output "tls_secret_name" {
  description = "TLS secret."
  value       = module.control_plane.tls_secret_name
}
