"""Machine endpoints: registry webhook events in (events), and the gateway
API for agents at the edge (gateway). JSON in, JSON out, errors in the
registry's shape {"errors": [{"code", "message"}]}."""
