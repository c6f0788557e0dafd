# frozen_string_literal: true

# Comparison peer: websocket-ruby (Debian ruby-websocket, the protocol library: handshake and
# framing, no I/O) inside the smallest idiomatic Ruby server loop for it, an EventMachine
# reactor (Debian ruby-eventmachine): one thread, epoll, one EM::Connection per socket,
# buffered non-blocking writes (send_data). This is the loop websocket-ruby's author builds on
# it (websocket-eventmachine-server, not packaged by Debian), reduced to what the peer needs.
#
#   GET  /ws (query ignored)     WebSocket; subscribes to the single broadcast topic
#   POST /publish[/<anything>]   the body goes out as one TEXT frame to every subscriber: the
#                                frame is built once (WebSocket::Frame::Outgoing::Server) and
#                                handed to each subscriber's send_data; 200 {"seq":N}
#   GET  /echo                   WebSocket; echoes every text/binary message
#   GET  /healthz                200 "ok"
#
# HTTP/1.1 keep-alive and pipelining on the publish connection; request bodies need a
# Content-Length. Usage: ruby server.rb PORT   (listens on 127.0.0.1)

gem 'websocket', '1.2.9'
gem 'eventmachine', '1.3.0.dev.1'
require 'websocket'
require 'websocket/version'
require 'eventmachine'

module Peer
  HOST = ENV.fetch('HOST', '127.0.0.1')
  MAX_HEAD = 16 * 1024
  MAX_BODY = 1024 * 1024
  SUBSCRIBERS = {} # Connection => true; a Hash keeps insertion order and O(1) delete
  @seq = 0

  def self.publish(body)
    @seq += 1
    frame = WebSocket::Frame::Outgoing::Server.new(version: 13, data: body, type: :text).to_s
    SUBSCRIBERS.each_key { |c| c.send_data(frame) }
    @seq
  end

  # One TCP connection: HTTP requests until an upgrade, then WebSocket frames.
  class Connection < EM::Connection
    def post_init
      @buf = +''
      @ws = nil # the incoming frame parser once upgraded
    end

    def receive_data(data)
      if @ws
        @ws << data
        ws_frames
      else
        @buf << data
        http_requests
      end
    end

    def unbind
      SUBSCRIBERS.delete(self)
    end

    private

    def http_requests
      loop do
        head_end = @buf.index("\r\n\r\n")
        if head_end.nil?
          reply_close(431, 'request head too large') if @buf.bytesize > MAX_HEAD
          return
        end
        head = @buf[0, head_end + 4]
        method, target, = head[0, head.index("\r\n")].split(' ', 3)
        path = target.to_s.split('?', 2).first
        headers = head.split("\r\n").drop(1).to_h do |line|
          k, v = line.split(':', 2)
          [k.to_s.strip.downcase, v.to_s.strip]
        end
        if headers['upgrade'].to_s.casecmp?('websocket') && (path == '/ws' || path == '/echo')
          return upgrade(head, path, @buf.byteslice(head_end + 4..))
        end

        length = headers['content-length'].to_i
        return reply_close(411, 'content-length required') if headers.key?('transfer-encoding')
        return reply_close(413, 'body too large') if length > MAX_BODY
        return if @buf.bytesize < head_end + 4 + length # wait for the rest of the body

        body = @buf.byteslice(head_end + 4, length).force_encoding(Encoding::UTF_8)
        @buf = @buf.byteslice(head_end + 4 + length..)
        if method == 'POST' && (path == '/publish' || path.start_with?('/publish/'))
          reply(200, 'application/json', %({"seq":#{Peer.publish(body)}}))
        elsif method == 'GET' && path == '/healthz'
          reply(200, 'text/plain', 'ok')
        else
          reply(404, 'text/plain', '')
        end
      end
    end

    def reply(status, type, body)
      send_data("HTTP/1.1 #{status} #{status == 200 ? 'OK' : 'Error'}\r\ncontent-type: #{type}\r\n" \
                "content-length: #{body.bytesize}\r\n\r\n#{body}")
    end

    def reply_close(status, text)
      reply(status, 'text/plain', text)
      close_connection_after_writing
    end

    def upgrade(head, path, rest)
      handshake = WebSocket::Handshake::Server.new
      handshake << head
      return reply_close(400, 'bad websocket handshake') unless handshake.finished? && handshake.valid?

      send_data(handshake.to_s)
      @version = handshake.version
      @echo = path == '/echo'
      @ws = WebSocket::Frame::Incoming::Server.new(version: @version)
      @buf = nil
      SUBSCRIBERS[self] = true unless @echo
      return if rest.nil? || rest.empty?

      @ws << rest
      ws_frames
    end

    def ws_frames
      while (frame = @ws.next)
        case frame.type
        when :text, :binary
          send_frame(frame.data, frame.type) if @echo # subscribers' messages are ignored
        when :ping
          send_frame(frame.data, :pong)
        when :close
          send_frame(frame.data, :close)
          close_connection_after_writing
          SUBSCRIBERS.delete(self)
          return
        end
      end
      return unless @ws.error?

      SUBSCRIBERS.delete(self)
      close_connection
    end

    def send_frame(data, type)
      send_data(WebSocket::Frame::Outgoing::Server.new(version: @version, data: data, type: type).to_s)
    end
  end
end

port = Integer(ARGV[0] || ENV.fetch('PORT', '9006'))
EM.epoll # EventMachine uses select(2), at most 1024 descriptors, unless told otherwise
EM.set_descriptor_table_size(Process.getrlimit(:NOFILE)[0])
%w[INT TERM].each { |sig| Signal.trap(sig) { EM.stop } }
EM.run do
  EM.start_server(Peer::HOST, port, Peer::Connection)
  $stdout.puts "websocket-ruby peer (ruby #{RUBY_VERSION}, websocket #{WebSocket::VERSION}, " \
               "eventmachine #{EM::VERSION}, #{EM.epoll? ? 'epoll' : 'select'}) listening on #{Peer::HOST}:#{port}"
  $stdout.flush
end
