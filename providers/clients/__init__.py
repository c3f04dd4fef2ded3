"""HTTP clients of the real providers (Airtm, Trustless Work), built on `requests`."""
