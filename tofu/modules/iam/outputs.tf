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

output "combined_roles" {
  description = "Roles of VMs that run several stages: name => the stages whose policies it carries (cpu => export, quantise)."
  value       = { for n, r in aws_iam_role.combined : r.name => local.combined[n] }
}

output "instance_profiles" {
  description = "Instance-profile name per stage, plus the combined ones (cpu); input instance_profile_name of compute-instance."
  value = merge(
    { for s, p in aws_iam_instance_profile.stage : s => p.name },
    { for n, p in aws_iam_instance_profile.combined : n => p.name },
  )
}

output "policies" {
  description = "The inline policy document (JSON) per stage, for review and the allow/deny tables."
  value       = local.policies
}
