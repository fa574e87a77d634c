"""HTTP plumbing shared by every endpoint: error rendering, CORS, templates."""
