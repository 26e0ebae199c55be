// The web front end's record (chat/frontends/frontend.h): HTTP (the page, /healthz, /metrics) on
// "http", and "https" over TLS; a connection is not a member until /ws makes it a WebSocket one.
#pragma once

#include "chat/frontends/frontend.h"
#include "chat/frontends/web/http_session.h"

namespace chat {

const FrontEnd& web_front_end();
// Served on `port` (--http-port), and on `tls_port` (--https-port) with a certificate.
ServedFrontEnd serve_web(uint16_t port, uint16_t tls_port, const WebOptions& options);

}  // namespace chat
