output "host_instance_id" {
  description = "The control-plane host."
  value       = aws_instance.host.id
}

output "host_private_ip" {
  description = "Private address of the host (DNS prefect.<domain> and mlflow.<domain> point here)."
  value       = aws_instance.host.private_ip
}

output "db_address" {
  description = "PostgreSQL endpoint (TLS required)."
  value       = aws_db_instance.this.address
}

output "db_master_secret_arn" {
  description = "Secrets Manager secret holding the database admin password (never in state)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "tls_secret_name" {
  description = "Secret holding the proxy's certificate and key."
  value       = aws_secretsmanager_secret.tls.name
}

output "host_security_group_id" {
  description = "Security group of the host."
  value       = aws_security_group.host.id
}

output "db_security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}
