"""Jinja templates shipped as package data: sheets/, worker/, admin/, report/."""
