"""Clouds: where a plan becomes a machine. `base` holds the interface; `ec2` and `docker` adapt it."""

from provisioner.clouds.base import (Cloud, CloudError, Instance, LaunchSpec, OWNER_TAG, TAG_PREFIX,
                                     BlockedOffers)

__all__ = ["Cloud", "CloudError", "Instance", "LaunchSpec", "OWNER_TAG", "TAG_PREFIX", "BlockedOffers"]
