locals {
  tags = merge(var.tags, { "ordinal:managed-by" = "ordinal", "ordinal:component" = "control-plane" })
}

# --- network: HTTPS in from the private network only; PostgreSQL from the host only -------
resource "aws_security_group" "host" {
  name        = "${var.name_prefix}-control-plane"
  description = "control-plane host: HTTPS from the private network"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "host_https" {
  for_each          = toset(var.private_cidrs)
  security_group_id = aws_security_group.host.id
  description       = "HTTPS (nginx: Prefect, MLflow) from ${each.value}"
  cidr_ipv4         = each.value
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "host_https" {
  security_group_id = aws_security_group.host.id
  description       = "HTTPS out (S3, package mirrors, AWS APIs)"
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "host_db" {
  security_group_id            = aws_security_group.host.id
  description                  = "PostgreSQL to the database"
  referenced_security_group_id = aws_security_group.db.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}

resource "aws_security_group" "db" {
  name        = "${var.name_prefix}-postgres"
  description = "PostgreSQL: from the control-plane host only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_host" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the control-plane host"
  referenced_security_group_id = aws_security_group.host.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}

# --- PostgreSQL 15 (RDS): TLS and SCRAM enforced, encrypted, private -------------------------
resource "aws_db_subnet_group" "this" {
  name       = "${var.name_prefix}-postgres"
  subnet_ids = var.subnet_ids
  tags       = local.tags
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name_prefix}-postgres15"
  family = "postgres15"
  tags   = local.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "password_encryption"
    value = "scram-sha-256"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

# Enhanced monitoring (OS metrics every 60 s) publishes through this role.
data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name_prefix}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier                          = "${var.name_prefix}-postgres"
  engine                              = "postgres"
  engine_version                      = "15"
  instance_class                      = var.db_instance_class
  allocated_storage                   = var.db_allocated_gib
  max_allocated_storage               = var.db_allocated_gib * 4
  storage_type                        = "gp3"
  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  db_name                             = "prefect"
  username                            = "ordinal_admin"
  manage_master_user_password         = true # the password lives in Secrets Manager, never in state
  iam_database_authentication_enabled = true
  db_subnet_group_name                = aws_db_subnet_group.this.name
  parameter_group_name                = aws_db_parameter_group.this.name
  vpc_security_group_ids              = [aws_security_group.db.id]
  publicly_accessible                 = false
  multi_az                            = var.multi_az
  backup_retention_period             = var.db_backup_retention_days
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name_prefix}-postgres-final"
  auto_minor_version_upgrade          = true
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = var.kms_key_arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  tags                                = local.tags
}

# --- TLS: the proxy's certificate and key, issued by the private CA, kept in Secrets Manager -
resource "aws_secretsmanager_secret" "tls" {
  name        = "${var.name_prefix}/control-plane/tls"
  description = "Server certificate and key of the control-plane proxy (written by `ordinal stack renew-certs`)"
  kms_key_id  = var.kms_key_arn
  tags        = local.tags
}

# --- the host: nginx, Prefect server, MLflow server, the control worker ----------------------
data "aws_iam_policy_document" "host_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name               = "${var.name_prefix}-control-plane"
  assume_role_policy = data.aws_iam_policy_document.host_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "host" {
  name = "control-plane"
  role = aws_iam_role.host.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ArtefactsAndBackups"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = ["${var.data_bucket_arn}/mlflow-artifacts/*", "${var.data_bucket_arn}/backups/*"]
      },
      {
        Sid       = "ListOwnPrefixes"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = [var.data_bucket_arn]
        Condition = { StringLike = { "s3:prefix" = ["mlflow-artifacts/*", "backups/*"] } }
      },
      {
        Sid      = "TlsAndDatabaseSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
        Resource = [aws_secretsmanager_secret.tls.arn, aws_db_instance.this.master_user_secret[0].secret_arn]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "host" {
  name = "${var.name_prefix}-control-plane"
  role = aws_iam_role.host.name
  tags = local.tags
}

resource "aws_instance" "host" {
  ami                         = var.ami_id
  instance_type               = var.host_instance_type
  subnet_id                   = var.subnet_ids[0]
  vpc_security_group_ids      = [aws_security_group.host.id]
  iam_instance_profile        = aws_iam_instance_profile.host.name
  associate_public_ip_address = false
  ebs_optimized               = true
  monitoring                  = true
  disable_api_termination     = true
  tags                        = merge(local.tags, { Name = "${var.name_prefix}-control-plane" })
  volume_tags                 = local.tags

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 50
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }

  user_data = <<-EOT
    #!/bin/bash
    # The image carries ordinal, nginx and the systemd units (deploy/systemd); this only
    # names the endpoints. Secrets come from Secrets Manager through the instance role.
    set -euo pipefail
    cat > /etc/ordinal/control-plane.env <<EOF
    ORDINAL_DOMAIN=${var.domain}
    ORDINAL_DB_HOST=${aws_db_instance.this.address}
    ORDINAL_TLS_SECRET=${aws_secretsmanager_secret.tls.name}
    EOF
    systemctl enable --now ordinal-prefect-worker@control
  EOT
}
