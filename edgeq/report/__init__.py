"""Report renderables: rich tables and panels, HTML; data classes live with the code that makes them."""
