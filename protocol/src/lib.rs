//! `tickcast-protocol`: a sans-IO implementation of RFC 6455 (WebSocket) plus the small HTTP and
//! envelope codecs shared by tickcast's server and load generator.
//!
//! Nothing here touches a socket, a clock or a runtime. Work in progress: see the modules.
