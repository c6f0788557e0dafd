# frozen_string_literal: true

# Comparison peer: Action Cable 6.1 (Debian ruby-actioncable) as a standalone cable server, the
# way the Rails guide's "Running Standalone Cable Servers" shows it (a Rails application booted
# in production, `run ActionCable.server` under puma), with the Redis subscription adapter
# (config/cable.yml) on a real redis-server. A channel that `stream_from`s the topic; publishing
# is `ActionCable.server.broadcast(topic, body)` from a small Rack route in the same process
# (config.ru).

gem 'railties', '6.1.7.10'
gem 'actioncable', '6.1.7.10'
require 'rails'
require 'action_cable/engine'

TOPIC = 't'

module ApplicationCable
  # No identification: the benchmark's subscribers are anonymous.
  class Connection < ActionCable::Connection::Base
  end

  class Channel < ActionCable::Channel::Base
  end
end

# Client: {"command":"subscribe","identifier":"{\"channel\":\"BroadcastChannel\"}"}
class BroadcastChannel < ApplicationCable::Channel
  def subscribed
    stream_from TOPIC
  end
end

class CablePeer < Rails::Application
  config.root = __dir__
  config.load_defaults 6.1
  # config/environments/production.rb of a generated app, as far as a cable server uses it.
  config.eager_load = true
  config.cache_classes = true
  config.consider_all_requests_local = false
  config.log_level = :warn
  config.logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
  config.secret_key_base = ENV.fetch('SECRET_KEY_BASE') { 'tickcast-peer-' * 8 } # no cookies or sessions are used
  # Standalone: config.ru mounts ActionCable.server itself (at /cable), not the Rails router.
  config.action_cable.mount_path = nil
  # The load generator sends no Origin header; a browser-facing deployment would list its
  # origins in config.action_cable.allowed_request_origins instead.
  config.action_cable.disable_request_forgery_protection = true
end

Rails.application.initialize!
