"""The OpenID Connect provider and scan-to-login (扫码登录)."""
