# frozen_string_literal: true

# Smoke test and frame capture for the Action Cable peer: a tiny Action Cable client written
# with websocket-ruby (Debian ruby-websocket) over plain sockets, one thread, IO.select.
#
#   ruby smoke.rb PORT [CLIENTS] [MESSAGES]
#       CLIENTS clients open /cable (subprotocol actioncable-v1-json), wait for the welcome,
#       subscribe to BroadcastChannel and wait for confirm_subscription; then MESSAGES bodies
#       are POSTed to /publish (one keep-alive connection); every client must receive every
#       one exactly once, unchanged. Order is reported, not required: Action Cable runs each
#       delivery as a job on its worker pool (4 threads), so a subscriber can get two close
#       messages swapped. Exit 0 on success, 1 otherwise; bounded to 30 s.
#   ruby smoke.rb capture PORT [SECONDS]
#       One client, every frame both ways printed (what a load generator must speak), two
#       messages published, for SECONDS (default 7: Action Cable pings every 3 s).

gem 'websocket', '1.2.9'
require 'websocket'
require 'socket'
require 'json'
require 'net/http'

IDENTIFIER = { channel: 'BroadcastChannel' }.to_json

# One Action Cable client connection.
class Client
  attr_reader :io, :messages, :state, :log

  def initialize(port, log: nil)
    @io = TCPSocket.new('127.0.0.1', port)
    @hs = WebSocket::Handshake::Client.new(url: "ws://127.0.0.1:#{port}/cable", protocols: ['actioncable-v1-json'])
    @log = log
    @io.write(@hs.to_s)
    log&.call('client>', @hs.to_s.strip.gsub("\r\n", "\n         "))
    @state = :handshake
    @messages = []
  end

  def send_json(text)
    @log&.call('client>', text)
    @io.write(WebSocket::Frame::Outgoing::Client.new(version: @hs.version, data: text, type: :text).to_s)
  end

  # Reads what is there; returns false when the connection closed.
  def read
    data = @io.read_nonblock(65_536, exception: false)
    return true if data == :wait_readable
    return false if data.nil?

    if @state == :handshake
      @hs << data
      return true unless @hs.finished?
      raise "handshake failed: #{@hs.error}" unless @hs.valid?

      @log&.call('server>', data[0, data.index("\r\n\r\n")].gsub("\r\n", "\n         "))
      @state = :open
      @frames = WebSocket::Frame::Incoming::Client.new(version: @hs.version)
      data = @hs.leftovers.to_s
    end
    @frames << data
    while (frame = @frames.next)
      on_frame(frame)
    end
    true
  end

  def on_frame(frame)
    case frame.type
    when :text
      @log&.call('server>', frame.data)
      msg = JSON.parse(frame.data)
      case msg['type']
      when 'welcome' then send_json({ command: 'subscribe', identifier: IDENTIFIER }.to_json)
      when 'confirm_subscription' then @state = :subscribed
      when 'ping', 'disconnect', 'reject_subscription' then nil
      else @messages << msg['message'] if msg['identifier'] == IDENTIFIER
      end
    when :ping
      @io.write(WebSocket::Frame::Outgoing::Client.new(version: @hs.version, data: frame.data, type: :pong).to_s)
    end
  end
end

def pump(clients, until_time)
  while Time.now < until_time
    yield and return true
    ready, = IO.select(clients.map(&:io), nil, nil, 0.05)
    (ready || []).each do |io|
      c = clients.find { |x| x.io == io }
      raise 'a client was disconnected' unless c.read
    end
  end
  false
end

def publish(http, body, path = '/publish/bench')
  res = http.post(path, body, 'content-type' => 'application/json')
  raise "publish: HTTP #{res.code}" unless res.code == '200' && res.body =~ /\A\{"seq":\d+\}\z/
end

if ARGV[0] == 'capture'
  port = Integer(ARGV[1])
  t0 = Time.now
  log = ->(dir, text) { puts format('%.3fs %s %s', Time.now - t0, dir, text) }
  c = Client.new(port, log: log)
  pump([c], t0 + 5) { c.state == :subscribed }
  Net::HTTP.start('127.0.0.1', port) do |http|
    publish(http, '{"lg":[1,1764000000000000000,0],"pad":"xxxx"}', '/publish')
    publish(http, 'plain "text" \\ é')
  end
  pump([c], t0 + Float(ARGV[2] || 7)) { false }
  exit 0
end

port = Integer(ARGV[0] || abort('usage: ruby smoke.rb PORT [CLIENTS] [MESSAGES] | ruby smoke.rb capture PORT [SECONDS]'))
n = Integer(ARGV[1] || 20)
m = Integer(ARGV[2] || 20)
deadline = Time.now + 30
clients = Array.new(n) { Client.new(port) }
pump(clients, deadline) { clients.all? { |c| c.state == :subscribed } } or abort('smoke: not every client subscribed')
sent = (1..m).map { |k| { lg: [k, (Time.now.to_f * 1e9).to_i, 0], pad: 'x"\\é' * (k % 3) }.to_json }
Net::HTTP.start('127.0.0.1', port) { |http| sent.each { |body| publish(http, body) } }
pump(clients, deadline) { clients.all? { |c| c.messages.size >= m } }
bad = clients.each_with_index.reject { |c, _| c.messages.sort == sent.sort }
bad.each { |c, i| warn "smoke: client #{i} got #{c.messages.size} of #{m} messages#{c.messages.size == m ? ' (some changed)' : ''}" }
swapped = clients.count { |c| c.messages != sent && c.messages.sort == sent.sort }
puts "actioncable smoke: #{n - bad.size} of #{n} clients got all #{m} messages exactly once, unchanged " \
     "(#{swapped} of them in another order than published)"
exit(bad.empty? ? 0 : 1)
