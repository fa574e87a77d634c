"""The grants: the code minted at the callback, and the token endpoint's grant types.

Authorization code and refresh token (RFC 6749 §4.1, §6).
"""
