"""Provider flows: Airtm links, top-ups, withdrawals and the janitor that converges them."""
