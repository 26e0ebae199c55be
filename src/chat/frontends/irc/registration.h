// The IRC front end's record (chat/frontends/frontend.h): IRC clients on "irc", and "ircs" over TLS.
#pragma once

#include "chat/frontends/frontend.h"
#include "chat/frontends/irc/irc.h"

namespace chat {

const FrontEnd& irc_front_end();
// Served on `port` (--irc-port), and on `tls_port` (--ircs-port) with a certificate.
ServedFrontEnd serve_irc(uint16_t port, uint16_t tls_port, const IrcOptions& options);

}  // namespace chat
