"""mlplatform: an asset-based data and ML platform on Dagster."""
