# Sourced by the benchmarks that compare with nginx: `nginx_serve DIR PORT` serves DIR on
# 127.0.0.1:PORT as a reference (gzip level 1 per request, as a scraper asking for gzip gets it),
# with its pid in DIR/nginx.pid.
nginx_serve() { # dir port
  cat > "$1/nginx.conf" <<CONF
worker_processes 2;
daemon on;
pid $1/nginx.pid;
error_log $1/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  gzip on; gzip_types text/plain; gzip_comp_level 1; gzip_min_length 0;
  server { listen 127.0.0.1:$2; root $1; location / { default_type text/plain; } }
}
CONF
  rm -f "$1/nginx.pid"
  nginx -c "$1/nginx.conf"
  sleep 0.5
}
