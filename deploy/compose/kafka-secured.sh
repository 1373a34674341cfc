#!/bin/sh
# The broker of docker-compose's secured example (deploy/compose/secured.yml), started instead
# of the image's own entry point so that it runs the configuration Loom's secured test tier
# runs: deploy/kafka/server.properties.tmpl + secured.properties.tmpl, keeping only SCRAM-SHA-512
# on the SASL_SSL listener (no PLAIN user list, no unsecured OAUTHBEARER). Loom's SCRAM user is
# created when the storage is formatted, its password read from the mounted secret.
set -eu
TLS=/etc/loom/tls/kafka
CONFIG=/tmp/server.properties
DATA=/var/lib/kafka/data
PASSWORD="$(cat "$TLS/kafka-password")"

sed -e "s|@LISTENERS@|PLAINTEXT://0.0.0.0:9092,SASL_SSL://0.0.0.0:9094|" \
    -e "s|@ADVERTISED_LISTENERS@|PLAINTEXT://kafka:9092,SASL_SSL://kafka:9094|" \
    -e "s|@PROTOCOL_MAP@|PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL|" \
    -e "s|@CONTROLLER_PORT@|9093|" \
    -e "s|@LOG_DIRS@|$DATA|" \
    /etc/loom/kafka/server.properties.tmpl >"$CONFIG"
sed -e "s|@TLS_DIR@|$TLS|g" \
    -e "s|^sasl.enabled.mechanisms=.*|sasl.enabled.mechanisms=SCRAM-SHA-512|" \
    -e "/plain.sasl.jaas.config/d" -e "/oauthbearer/d" -e "/scram-sha-256/d" \
    -e "/^listener.name.ssl\./d" \
    /etc/loom/kafka/secured.properties.tmpl >>"$CONFIG"

if [ ! -f "$DATA/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c "$CONFIG" \
    --add-scram "SCRAM-SHA-512=[name=loom,password=$PASSWORD]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
