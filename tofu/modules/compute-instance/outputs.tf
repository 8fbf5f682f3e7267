output "instance_id" {
  description = "EC2 instance id."
  value       = aws_instance.this.id
}

output "instance_type" {
  description = "Instance class launched."
  value       = aws_instance.this.instance_type
}

output "market" {
  description = "spot or on-demand, as requested."
  value       = var.market
}

output "availability_zone" {
  description = "Zone the instance runs in."
  value       = aws_instance.this.availability_zone
}

output "private_ip" {
  description = "Private address (there is no public one)."
  value       = aws_instance.this.private_ip
}

output "security_group_id" {
  description = "The worker's security group (egress only)."
  value       = aws_security_group.worker.id
}

output "work_queue" {
  description = "The Prefect queue the worker polls."
  value       = local.work_queue
}

output "user_data" {
  description = "The rendered user-data (bootstrap of the Prefect worker); no secrets."
  value       = local.user_data
}

output "tags" {
  description = "Tags on the instance, its volumes and its security group."
  value       = local.tags
}
