"""The access model as code: `policies/*.yaml` loaded, validated, exported and applied to Keycloak."""
