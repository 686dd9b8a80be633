"""Reports rendered from results.json (markdown now; HTML with plots in #5)."""
