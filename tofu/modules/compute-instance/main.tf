locals {
  name       = "ordinal-${var.run_id}-${var.stage}"
  work_queue = coalesce(var.work_queue, "run-${var.run_id}")
  tags = merge(var.extra_tags, {
    "Name"                         = local.name
    "ordinal:managed-by"           = "ordinal"
    "ordinal:run-id"               = var.run_id
    "ordinal:stage"                = var.stage
    "ordinal:owner"                = var.owner
    "ordinal:cost-centre"          = var.cost_centre
    "ordinal:market"               = var.market
    "ordinal:max-lifetime-minutes" = tostring(var.max_lifetime_minutes)
  })
  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    run_id               = var.run_id
    stage                = var.stage
    prefect_api_url      = var.prefect_api_url
    work_pool            = var.work_pool
    work_queue           = local.work_queue
    worker_name          = local.name
    worker_python        = var.worker_python
    worker_env           = var.worker_env
    max_lifetime_minutes = var.max_lifetime_minutes
  })
}

# Workers pull their work from the Prefect API: no inbound rule at all, HTTPS out only.
resource "aws_security_group" "worker" {
  name        = local.name
  description = "ordinal worker ${var.run_id}/${var.stage}: no inbound, HTTPS out"
  vpc_id      = var.vpc_id
  tags        = local.tags

  # Explicitly empty: the provider then removes any inbound rule added out of band.
  ingress = []

  egress {
    description = "HTTPS to the control plane and object storage"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.egress_cidrs
  }
}

resource "aws_instance" "this" {
  ami                                  = var.ami_id
  instance_type                        = var.instance_type
  subnet_id                            = var.subnet_id
  vpc_security_group_ids               = [aws_security_group.worker.id]
  iam_instance_profile                 = var.instance_profile_name
  instance_initiated_shutdown_behavior = "terminate"
  associate_public_ip_address          = false
  ebs_optimized                        = true
  monitoring                           = var.detailed_monitoring
  user_data                            = local.user_data
  user_data_replace_on_change          = true
  tags                                 = local.tags
  volume_tags                          = local.tags

  dynamic "instance_market_options" {
    for_each = var.market == "spot" ? [1] : []
    content {
      market_type = "spot"
      spot_options {
        instance_interruption_behavior = "terminate"
        spot_instance_type             = "one-time"
        max_price                      = var.spot_max_price
      }
    }
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gib
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  lifecycle {
    # The provider reads spot market options back empty from some endpoints (and from AWS
    # once the request is fulfilled); a change of market is a new apply of a new key anyway.
    ignore_changes = [instance_market_options]
  }
}
