output "stages" {
  description = "The pipeline stages that have a role."
  value       = sort(keys(local.access))
}

output "role_arns" {
  description = "Role ARN per stage."
  value       = { for s, r in aws_iam_role.stage : s => r.arn }
}

output "role_names" {
  description = "Role name per stage."
  value       = { for s, r in aws_iam_role.stage : s => r.name }
}

output "instance_profiles" {
  description = "Instance-profile name per stage (input instance_profile_name of compute-instance)."
  value       = { for s, p in aws_iam_instance_profile.stage : s => p.name }
}

output "policies" {
  description = "The inline policy document (JSON) per stage, for review and the allow/deny tables."
  value       = local.policies
}
