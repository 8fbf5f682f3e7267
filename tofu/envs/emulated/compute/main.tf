# One compute VM of one run on the emulated endpoint (state key runs/<run>/<vm>.tfstate).
# Applied by the `tofu` provisioner; the same module is what envs/aws/compute applies.
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
  description = "The emulated AWS endpoint (moto_server on loopback) for IAM and STS."
  type        = string
  validation {
    condition     = can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.endpoint))
    error_message = "the emulated endpoint must be http://127.0.0.1:<port>: nothing here may leave loopback."
  }
}

variable "ec2_endpoint" {
  description = "EC2 endpoint: the fault injector in front of moto, or null for endpoint."
  type        = string
  default     = null
  validation {
    condition     = var.ec2_endpoint == null || can(regex("^http://127\\.0\\.0\\.1:[0-9]+$", var.ec2_endpoint))
    error_message = "ec2_endpoint must be http://127.0.0.1:<port>."
  }
}

variable "region" {
  description = "Region."
  type        = string
  default     = "us-east-1"
}

variable "run_id" {
  description = "Pipeline run id."
  type        = string
}

variable "stage" {
  description = "Pipeline stage of the VM."
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
  description = "Spot price cap (USD/hour) or null."
  type        = string
  default     = null
}

variable "ami_id" {
  description = "Provisioning image."
  type        = string
}

variable "subnet_id" {
  description = "Private subnet (zone) to launch into."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the subnet."
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
  description = "Prefect API the worker connects to."
  type        = string
}

variable "work_pool" {
  description = "Prefect work pool."
  type        = string
  default     = "compute"
}

variable "work_queue" {
  description = "Prefect queue (null: run-<run_id>)."
  type        = string
  default     = null
}

variable "worker_python" {
  description = "Python with prefect on the (emulated) instance."
  type        = string
}

variable "worker_env" {
  description = "Extra worker environment (no secrets)."
  type        = map(string)
  default     = {}
}

provider "aws" {
  region                      = var.region
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true
  # A few SDK retries for transport hiccups; a capacity error stays a capacity error on
  # retry (same ClientToken), and the fallback policy decides what to do with it.
  max_retries = 3
  endpoints {
    ec2 = coalesce(var.ec2_endpoint, var.endpoint)
    iam = var.endpoint
    sts = var.endpoint
  }
  default_tags {
    tags = { "ordinal:environment" = "emulated" }
  }
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
  # The emulated network has no route anywhere; the rule documents intent only.
  egress_cidrs = ["10.42.0.0/16"]
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

output "user_data" {
  description = "Rendered user-data."
  value       = module.vm.user_data
}
