variable "name_prefix" {
  description = "Role and instance-profile names: <prefix>-<stage>."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,40}$", var.name_prefix))
    error_message = "name_prefix must be 3-41 characters of a-z, 0-9 and '-'."
  }
}

variable "data_bucket_arn" {
  description = "ARN of the data bucket (output data_bucket_arn of the storage module)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]+$", var.data_bucket_arn))
    error_message = "data_bucket_arn must be an S3 bucket ARN such as arn:aws:s3:::ordinal-data."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting the bucket; when set, roles get Decrypt/GenerateDataKey on it only."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every role and profile."
  type        = map(string)
  default     = {}
}
