# Shared by bench/run.sh and bench/ab.sh (sourced after bench/lib.sh): an Envoy per variant, with
# direct_response routes (no upstream limits the figures) and, for the ext_authz variants, the filter
# asking a gRPC server. Needs ENVOY, WORK, PIDS, free_port and wait_http (bench/lib.sh); GRPC is the
# default authz port; ENVOY_WORKERS (default 1) is Envoy's --concurrency.
ENVOY_WORKERS=${ENVOY_WORKERS:-1}
envoy_config() { # name listen admin filters-yaml route-extra-yaml authz-port
  cat <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } }
static_resources:
  listeners:
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                direct_response: { status: 200, body: { inline_string: "ok" } }
$5
          http_filters:
$4
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: cognito_authz
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: cognito_authz
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${6:-$GRPC} } } } }] }]
YAML
}
EXTAUTHZ_FILTER='          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              status_on_error: { code: ServiceUnavailable }
              grpc_service: { envoy_grpc: { cluster_name: cognito_authz }, timeout: 2s }'
EXTAUTHZ_ROUTE='                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    check_settings: { context_extensions: { access: mfa } }'

declare -A PORT EPID
BASE=40
start_envoy() { # name filters route [authz-port]
  local port admin; port=$(free_port); admin=$(free_port)
  envoy_config "$1" "$port" "$admin" "$2" "$3" "${4:-$GRPC}" >"$WORK/$1.yaml"
  BASE=$((BASE + 1))   # outside the background job, or every Envoy would get the same id
  "$ENVOY" -c "$WORK/$1.yaml" --concurrency "$ENVOY_WORKERS" --base-id "$BASE" -l error >"$WORK/$1.log" 2>&1 &
  PIDS+=($!); EPID[$1]=$!
  PORT[$1]=$port
  wait_http "http://127.0.0.1:$admin/ready"
}
