variable "run_id" {
  description = "The pipeline run this VM belongs to (tag ordinal:run-id, names, the Prefect queue)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.run_id))
    error_message = "run_id must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit."
  }
}

variable "stage" {
  description = "The pipeline stage the VM runs (selects the tag ordinal:stage; the instance profile must be that stage's)."
  type        = string
  validation {
    condition     = contains(["ingest", "preprocess", "train", "export", "quantise", "release", "backup"], var.stage)
    error_message = "stage must be one of ingest, preprocess, train, export, quantise, release, backup."
  }
}

variable "instance_type" {
  description = "Instance class: g4dn.xlarge or g6.xlarge (training), c6i.xlarge (export, parity, quantisation)."
  type        = string
  validation {
    condition     = contains(["g4dn.xlarge", "g6.xlarge", "c6i.xlarge"], var.instance_type)
    error_message = "instance_type must be one of g4dn.xlarge, g6.xlarge, c6i.xlarge."
  }
}

variable "market" {
  description = "Purchase option: spot or on-demand."
  type        = string
  default     = "spot"
  validation {
    condition     = contains(["spot", "on-demand"], var.market)
    error_message = "market must be spot or on-demand."
  }
}

variable "spot_max_price" {
  description = "Maximum hourly spot price in USD as a string; null means the on-demand price (AWS's default)."
  type        = string
  default     = null
  validation {
    condition     = var.spot_max_price == null || can(regex("^[0-9]+(\\.[0-9]+)?$", var.spot_max_price))
    error_message = "spot_max_price must be a decimal number such as \"0.25\", or null."
  }
}

variable "ami_id" {
  description = "The provisioning image (ordinal and a Prefect worker installed)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "Private subnet to launch into (the fallback policy moves to another zone's subnet)."
  type        = string
  validation {
    condition     = can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123456789abcdef0."
  }
}

variable "vpc_id" {
  description = "VPC of the subnet; the VM's security group is created there."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "instance_profile_name" {
  description = "The stage's instance profile (output instance_profiles[stage] of the iam module)."
  type        = string
  validation {
    condition     = length(var.instance_profile_name) > 0
    error_message = "instance_profile_name must not be empty."
  }
}

variable "owner" {
  description = "Who answers for this VM (tag ordinal:owner): a person or team address."
  type        = string
  validation {
    condition     = length(trimspace(var.owner)) > 0
    error_message = "owner must not be empty."
  }
}

variable "cost_centre" {
  description = "Cost centre billed for this VM (tag ordinal:cost-centre)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,64}$", var.cost_centre))
    error_message = "cost_centre must be 1-64 characters of letters, digits, '_', '.', '-'."
  }
}

variable "max_lifetime_minutes" {
  description = "The VM powers itself off (and is terminated) this many minutes after boot, whatever it is doing."
  type        = number
  default     = 720
  validation {
    condition     = var.max_lifetime_minutes >= 5 && var.max_lifetime_minutes <= 2880 && floor(var.max_lifetime_minutes) == var.max_lifetime_minutes
    error_message = "max_lifetime_minutes must be a whole number between 5 and 2880 (two days)."
  }
}

variable "root_volume_gib" {
  description = "Size of the encrypted gp3 root volume in GiB."
  type        = number
  default     = 100
  validation {
    condition     = var.root_volume_gib >= 30 && var.root_volume_gib <= 2000
    error_message = "root_volume_gib must be between 30 and 2000."
  }
}

variable "kms_key_id" {
  description = "KMS key ARN for the root volume; null uses the account's default EBS key."
  type        = string
  default     = null
}

variable "prefect_api_url" {
  description = "The Prefect API the worker connects to (through the control plane's TLS proxy)."
  type        = string
  validation {
    condition     = can(regex("^https?://", var.prefect_api_url))
    error_message = "prefect_api_url must be an http(s) URL."
  }
}

variable "work_pool" {
  description = "Prefect work pool of the worker."
  type        = string
  default     = "compute"
}

variable "work_queue" {
  description = "The run's own queue; null means run-<run_id>."
  type        = string
  default     = null
}

variable "worker_python" {
  description = "The Python interpreter on the image that has prefect and ordinal installed."
  type        = string
  default     = "/opt/ordinal/venv/bin/python"
}

variable "worker_env" {
  description = "Extra environment for the worker (no secrets: user-data is readable from the instance)."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.worker_env) : can(regex("^[A-Z_][A-Z0-9_]*$", k))])
    error_message = "worker_env keys must be upper-case shell variable names."
  }
}

variable "egress_cidrs" {
  description = "Where the worker may connect (HTTPS only): the control plane's proxy and the S3 endpoints."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  validation {
    condition     = length(var.egress_cidrs) > 0 && alltrue([for c in var.egress_cidrs : can(cidrhost(c, 0))])
    error_message = "egress_cidrs must be a non-empty list of CIDR blocks."
  }
}

variable "extra_tags" {
  description = "More tags; the ordinal:* tags always win."
  type        = map(string)
  default     = {}
}

variable "detailed_monitoring" {
  description = "One-minute CloudWatch metrics (billed); short-lived batch VMs report through Prefect and MLflow instead."
  type        = bool
  default     = false
}
