# One compute VM of one run in a real account (state key runs/<run>/<stage>.tfstate).
# The `tofu` provisioner applies it with env = "aws"; tests validate and plan it only.
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
  default     = null
}

variable "region" {
  description = "Region."
  type        = string
}

variable "run_id" {
  description = "Pipeline run id."
  type        = string
}

variable "stage" {
  description = "Pipeline stage."
  type        = string
}

variable "instance_type" {
  description = "g4dn.xlarge, g6.xlarge or c6i.xlarge."
  type        = string
}

variable "market" {
  description = "spot or on-demand."
  type        = string
}

variable "spot_max_price" {
  description = "Spot price cap or null."
  type        = string
  default     = null
}

variable "ami_id" {
  description = "Provisioning image."
  type        = string
}

variable "subnet_id" {
  description = "Private subnet."
  type        = string
}

variable "vpc_id" {
  description = "VPC."
  type        = string
}

variable "instance_profile_name" {
  description = "The stage's instance profile."
  type        = string
}

variable "owner" {
  description = "Owner tag."
  type        = string
}

variable "cost_centre" {
  description = "Cost-centre tag."
  type        = string
}

variable "max_lifetime_minutes" {
  description = "Maximum lifetime guard."
  type        = number
  default     = 720
}

variable "prefect_api_url" {
  description = "Prefect API (through the control plane's proxy)."
  type        = string
}

variable "work_pool" {
  description = "Prefect work pool."
  type        = string
  default     = "compute"
}

variable "work_queue" {
  description = "Prefect queue."
  type        = string
  default     = null
}

variable "worker_python" {
  description = "Python on the image."
  type        = string
  default     = "/opt/ordinal/venv/bin/python"
}

variable "worker_env" {
  description = "Extra worker environment (no secrets)."
  type        = map(string)
  default     = {}
}

variable "egress_cidrs" {
  description = "HTTPS destinations of the worker (control-plane proxy, VPC endpoints)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kms_key_id" {
  description = "KMS key for the root volume or null."
  type        = string
  default     = null
}

provider "aws" {
  region              = var.region
  allowed_account_ids = var.account_id == null ? null : [var.account_id]
  # The provider's default (25) would retry a spot capacity error for minutes; a few tries,
  # then the provisioner's fallback policy moves zone or market.
  max_retries = 3
}

module "vm" {
  source                = "../../../modules/compute-instance"
  run_id                = var.run_id
  stage                 = var.stage
  instance_type         = var.instance_type
  market                = var.market
  spot_max_price        = var.spot_max_price
  ami_id                = var.ami_id
  subnet_id             = var.subnet_id
  vpc_id                = var.vpc_id
  instance_profile_name = var.instance_profile_name
  owner                 = var.owner
  cost_centre           = var.cost_centre
  max_lifetime_minutes  = var.max_lifetime_minutes
  prefect_api_url       = var.prefect_api_url
  work_pool             = var.work_pool
  work_queue            = var.work_queue
  worker_python         = var.worker_python
  worker_env            = var.worker_env
  egress_cidrs          = var.egress_cidrs
  kms_key_id            = var.kms_key_id
}

output "instance_id" {
  description = "EC2 instance id."
  value       = module.vm.instance_id
}

output "instance_type" {
  description = "Instance class."
  value       = module.vm.instance_type
}

output "market" {
  description = "Market requested."
  value       = module.vm.market
}

output "availability_zone" {
  description = "Zone."
  value       = module.vm.availability_zone
}

output "work_queue" {
  description = "Prefect queue."
  value       = module.vm.work_queue
}
