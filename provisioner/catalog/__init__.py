"""The catalog: offers (instance type x region x market) with specs, prices and CPU scores."""

from provisioner.catalog.load import DEFAULT_SCORE_SOURCE, build_catalog, load_catalog
from provisioner.catalog.model import ON_DEMAND, SPOT, Catalog, Offer

__all__ = ["Catalog", "Offer", "SPOT", "ON_DEMAND", "DEFAULT_SCORE_SOURCE", "build_catalog",
           "load_catalog"]
