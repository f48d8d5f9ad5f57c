# dockroot's post_install on Arch Linux: the package adds a mkinitcpio hook
# but, as Arch packages do, changes no configuration.
echo "dockroot: to boot images, add 'dockroot' to HOOKS=(...) in /etc/mkinitcpio.conf after 'block' (and after 'resume', if used), then run 'mkinitcpio -P'."
echo "dockroot: enable boot counting with 'systemctl enable dockroot-mark-good.service'."
