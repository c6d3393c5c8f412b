"""Serving: the identification API and the farmer's web page."""
