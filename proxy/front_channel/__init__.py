"""The browser leg: consent, the browser-binding cookie, the redirect to the IdP."""
