# frozen_string_literal: true

# Comparison peer: Action Cable standalone under puma, plus the common peer routes.
#
#   GET  /cable                  Action Cable (WebSocket, subprotocol actioncable-v1-json); a
#                                client subscribes to BroadcastChannel, which streams from "t"
#   POST /publish[/<anything>]   ActionCable.server.broadcast("t", body): every subscriber gets
#                                {"identifier":"{\"channel\":\"BroadcastChannel\"}","message":"<body, JSON-escaped>"};
#                                200 {"seq":N}
#   GET  /healthz                200 "ok"
#
# Start: scripts/peers.sh start actioncable PORT (redis-server, then puma -e production).

require_relative 'app'

seq = 0
seq_lock = Mutex.new
json = { 'content-type' => 'application/json' }

publish = lambda do |env|
  return [405, { 'content-length' => '0' }, []] unless env['REQUEST_METHOD'] == 'POST'

  body = env['rack.input'].read.force_encoding(Encoding::UTF_8)
  n = seq_lock.synchronize { seq += 1 }
  ActionCable.server.broadcast(TOPIC, body)
  answer = %({"seq":#{n}})
  [200, json.merge('content-length' => answer.bytesize.to_s), [answer]]
end

map('/cable') { run ActionCable.server }
map('/publish') { run publish }
map('/healthz') { run ->(_env) { [200, { 'content-type' => 'text/plain', 'content-length' => '2' }, ['ok']] } }
