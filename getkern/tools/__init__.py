"""Developer tools: traffic counting, code-generation gate, roofline model."""
