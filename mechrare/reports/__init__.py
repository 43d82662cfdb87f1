"""Human-readable views of a run (``mechrare ls``; the HTML report lands later)."""
