"""The Casbin model and policy (data, not code); a package only so that wheels ship them."""
