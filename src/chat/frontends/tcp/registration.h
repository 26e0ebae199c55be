// The TCP front end's record (chat/frontends/frontend.h): the chat port, where a connection speaks
// the article's dialect until a hello hands it to native JSON lines; "tcp", and "tls" over TLS.
#pragma once

#include "chat/frontends/frontend.h"

namespace chat {

const FrontEnd& tcp_front_end();
// Served on `port` (--port), and on `tls_port` (--tls-port) with a certificate.
ServedFrontEnd serve_tcp(uint16_t port, uint16_t tls_port);

}  // namespace chat
