output "data_bucket" {
  description = "Name of the data bucket (the storage root for datasets/, models/, backups/, releases/)."
  value       = aws_s3_bucket.data.id
}

output "data_bucket_arn" {
  description = "ARN of the data bucket."
  value       = aws_s3_bucket.data.arn
}

output "dr_bucket" {
  description = "Name of the disaster-recovery bucket in dr_region."
  value       = aws_s3_bucket.dr.id
}

output "dr_bucket_arn" {
  description = "ARN of the disaster-recovery bucket."
  value       = aws_s3_bucket.dr.arn
}

output "log_bucket" {
  description = "Bucket receiving S3 server access logs."
  value       = aws_s3_bucket.logs.id
}

output "replication_role_arn" {
  description = "Role S3 assumes to replicate into the DR bucket."
  value       = aws_iam_role.replication.arn
}

output "data_bucket_policy" {
  description = "The data bucket's policy document (attached when apply_bucket_policy)."
  value       = data.aws_iam_policy_document.data.json
}

output "compliance_prefixes" {
  description = "Prefixes written with COMPLIANCE-mode retention."
  value       = var.compliance_prefixes
}

output "lifecycle_rule_ids" {
  description = "Lifecycle rule id per prefix."
  value       = { for p, _ in var.lifecycle_tiers : p => "tier-${trimsuffix(replace(p, "/", "-"), "-")}" }
}

output "lifecycle_tiers" {
  description = "The lifecycle tiers applied to the data bucket, per prefix (as declared)."
  value       = var.lifecycle_tiers
}

output "governance_retention_days" {
  description = "Default GOVERNANCE retention of the data bucket, in days."
  value       = var.governance_retention_days
}

output "extra_buckets" {
  description = "Name of each further bucket, by key."
  value       = { for k, b in aws_s3_bucket.extra : k => b.id }
}

output "extra_bucket_locks" {
  description = "Object lock per further bucket: mode (NONE when off) and default retention days."
  value = {
    for k, b in var.extra_buckets : k => {
      mode = coalesce(b.lock_mode, "NONE")
      days = b.lock_mode == null ? 0 : b.lock_days
    }
  }
}
