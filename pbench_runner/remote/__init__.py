"""Remote hosts: Tool Meisters started over SSH (paramiko) on other machines.

==============  ==============================================================
module          concern
==============  ==============================================================
``options``     what the user chose: ssh config, known hosts, tunnel or direct
``ssh``         one connection per host, the way OpenSSH would open it
``bundle``      the self-contained meister copied to a host, cached by hash
``tunnel``      port forwards over a host's SSH transport (both directions)
``hostside``    what runs *on* the remote host: watchdog, meister, clean-up
``hosts``       the controller's side: every remote host of one session
==============  ==============================================================
"""
