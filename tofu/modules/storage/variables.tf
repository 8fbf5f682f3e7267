variable "name_prefix" {
  description = "Bucket names start with it: <prefix>-data, <prefix>-data-dr, <prefix>-logs."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,40}$", var.name_prefix))
    error_message = "name_prefix must be 3-41 characters of a-z, 0-9 and '-'."
  }
}

variable "governance_retention_days" {
  description = "Default object-lock retention (GOVERNANCE mode) for everything in the data bucket."
  type        = number
  default     = 7
  validation {
    condition     = var.governance_retention_days >= 1 && var.governance_retention_days <= 3650
    error_message = "governance_retention_days must be between 1 and 3650."
  }
}

variable "compliance_prefixes" {
  description = "Prefixes whose objects must be written with COMPLIANCE-mode retention (raw data, releases)."
  type        = list(string)
  default     = ["datasets/raw/", "releases/"]
  validation {
    condition     = alltrue([for p in var.compliance_prefixes : can(regex("^[a-z0-9_-]+(/[a-z0-9_-]+)*/$", p))])
    error_message = "compliance_prefixes must be key prefixes ending in '/', such as datasets/raw/."
  }
}

variable "lifecycle_tiers" {
  description = <<-EOT
    Lifecycle per prefix: after warm_days objects move to STANDARD_IA (warm), after
    archive_days to GLACIER (archived); expire_days deletes current versions (null keeps
    them); noncurrent_days deletes superseded versions. 0 or null disables a step.
  EOT
  type = map(object({
    warm_days       = optional(number)
    archive_days    = optional(number)
    expire_days     = optional(number)
    noncurrent_days = optional(number)
  }))
  default = {
    "datasets/raw/"       = { warm_days = 30, archive_days = 180, noncurrent_days = 365 }
    "datasets/processed/" = { warm_days = 30, archive_days = 365, noncurrent_days = 90 }
    "models/checkpoints/" = { expire_days = 30, noncurrent_days = 7 }
    "models/onnx/"        = { warm_days = 60, archive_days = 365, noncurrent_days = 180 }
    "mlflow-artifacts/"   = { warm_days = 90, noncurrent_days = 90 }
    "backups/"            = { archive_days = 30, expire_days = 400, noncurrent_days = 30 }
    "releases/"           = { archive_days = 365 }
  }
  validation {
    condition = alltrue([
      for p, t in var.lifecycle_tiers :
      endswith(p, "/") && coalesce(t.warm_days, 30) >= 30 && (
        t.warm_days == null || t.archive_days == null || coalesce(t.archive_days, 0) > coalesce(t.warm_days, 0) + 29
      )
    ])
    error_message = "lifecycle_tiers keys must end in '/', warm_days must be at least 30 and archive_days must come at least 30 days after warm_days (S3's STANDARD_IA minimum)."
  }
}

variable "dr_region" {
  description = "Region of the disaster-recovery bucket (must differ from the primary region; checked by the caller's provider aliases)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS on the buckets; null uses the AWS-managed aws/s3 key."
  type        = string
  default     = null
}

variable "apply_bucket_policy" {
  description = "Attach the data bucket's policy (TLS only; COMPLIANCE lock required under compliance_prefixes). The emulated environment turns it off: moto applies statements for principal * but ignores their conditions, which would make both conditional denies blanket denies."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow destroy to delete non-empty buckets (emulated and test environments only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every bucket and role."
  type        = map(string)
  default     = {}
}

variable "extra_buckets" {
  description = <<-EOT
    Further buckets in the data bucket's posture (versioned, SSE-KMS, public access blocked,
    access-logged, lifecycle), named <prefix>-<key>. lock_mode GOVERNANCE or COMPLIANCE sets
    object lock with that default retention for lock_days; null leaves object lock off.
    noncurrent_days expires superseded versions (null keeps them). Used by the control-plane
    stack for its MLflow artefact, backup and release buckets.
  EOT
  type = map(object({
    lock_mode       = optional(string)
    lock_days       = optional(number, 7)
    noncurrent_days = optional(number)
  }))
  default = {}
  validation {
    condition = alltrue([
      for k, b in var.extra_buckets :
      can(regex("^[a-z0-9][a-z0-9-]{1,20}$", k)) && k != "data" && k != "data-dr" && k != "logs" &&
      contains(["GOVERNANCE", "COMPLIANCE", "NONE"], coalesce(b.lock_mode, "NONE")) &&
      b.lock_days >= 1 && b.lock_days <= 3650 && coalesce(b.noncurrent_days, 1) >= 1
    ])
    error_message = "extra_buckets keys must be 2-21 characters of a-z, 0-9 and '-' (not data, data-dr or logs); lock_mode GOVERNANCE, COMPLIANCE or null; lock_days 1-3650; noncurrent_days at least 1."
  }
}
