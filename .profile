# Heroku sources this file in every dyno before its command (nothing else
# reads it: not the container, not Render, not the tests' gunicorn).
#
# Heroku Key-Value Store serves TLS with a certificate Heroku signs itself,
# which redis-py refuses by default, and REDIS_URL belongs to the add-on (it
# changes on maintenance), so it cannot be edited for good. With
# HEROKU_KVS_SKIP_TLS_VERIFY=true (app.json sets it) a rediss:// REDIS_URL
# without options gets ssl_cert_reqs=none, which redis-py reads from the URL:
# still encrypted, but the server is not authenticated, as Heroku advises for
# Python clients. Any other REDIS_URL is left as it is.
if [ "${HEROKU_KVS_SKIP_TLS_VERIFY:-}" = "true" ]; then
  case "${REDIS_URL:-}" in
    rediss://*\?*) ;;
    rediss://*) export REDIS_URL="${REDIS_URL}?ssl_cert_reqs=none" ;;
  esac
fi
