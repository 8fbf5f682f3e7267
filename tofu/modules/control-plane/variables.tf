variable "name_prefix" {
  description = "Names of the host, database and groups start with it."
  type        = string
  default     = "ordinal"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name_prefix))
    error_message = "name_prefix must be 3-31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the control plane."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in at least two zones (the database subnet group needs two); the host goes into the first."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two private subnets in different zones."
  }
}

variable "private_cidrs" {
  description = "The private network (VPN, office, compute VPC) allowed to reach HTTPS on the host."
  type        = list(string)
  validation {
    condition     = length(var.private_cidrs) > 0 && alltrue([for c in var.private_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "private_cidrs must be CIDR blocks of the private network, never 0.0.0.0/0."
  }
}

variable "ami_id" {
  description = "Image of the control-plane host (nginx, Prefect, MLflow, the control worker)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "host_instance_type" {
  description = "Host size; 2 vCPU and 8 GiB are enough (the local stack measures about 1.4 GiB RSS)."
  type        = string
  default     = "m6i.large"
}

variable "db_instance_class" {
  description = "RDS instance class for PostgreSQL (databases prefect and mlflow)."
  type        = string
  default     = "db.m6g.large"
  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.m6g.large."
  }
}

variable "db_allocated_gib" {
  description = "Initial gp3 storage in GiB (autoscaling up to 4x)."
  type        = number
  default     = 50
  validation {
    condition     = var.db_allocated_gib >= 20 && var.db_allocated_gib <= 16384
    error_message = "db_allocated_gib must be between 20 and 16384."
  }
}

variable "db_backup_retention_days" {
  description = "RDS automated backups kept (the stack's own encrypted dumps are separate)."
  type        = number
  default     = 7
  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "multi_az" {
  description = "A standby in a second zone (production)."
  type        = bool
  default     = true
}

variable "data_bucket_arn" {
  description = "ARN of the data bucket (storage module): the host reads and writes mlflow-artifacts/ and backups/ only."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]+$", var.data_bucket_arn))
    error_message = "data_bucket_arn must be an S3 bucket ARN."
  }
}

variable "kms_key_arn" {
  description = "KMS key for the database, the root volume and the TLS secret; null uses AWS-managed keys."
  type        = string
  default     = null
}

variable "domain" {
  description = "DNS suffix of the services: prefect.<domain>, mlflow.<domain>."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9.-]+\\.[a-z]{2,}$", var.domain))
    error_message = "domain must be a DNS name such as ml.example.internal."
  }
}

variable "tags" {
  description = "Tags on everything."
  type        = map(string)
  default     = {}
}
