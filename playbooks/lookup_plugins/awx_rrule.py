# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""awx.awx.schedule_rrule for playbooks/awx_configure.yml, on ansible-core 2.18 and later.

awx.awx 24.6.1 (the newest release, and the one the ``ansible`` package bundles) returns the rrule as a string, which
ansible-core refuses since 2.18 ("returned <class 'str'> instead of <class 'list'>"); AWX fixed it after that release
(ansible/awx pull request 15625). This lookup runs awx.awx's own with the same terms and options and hands its rrule
back as a list of one, so the rrule is still the one awx.awx.schedule_rrule computes. Remove it once a fixed awx.awx is
bundled, and call awx.awx.schedule_rrule directly.
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        try:
            awx = lookup_loader.get('awx.awx.schedule_rrule', loader=self._loader, templar=self._templar)
        except AnsibleError as exc:
            raise AnsibleError('awx.awx.schedule_rrule cannot run here (%s): it needs the Python libraries pytz and python-dateutil '
                               'beside Ansible on the controller: pip install pytz python-dateutil' % exc) from exc
        if awx is None:
            raise AnsibleError('the collection awx.awx is not installed: the ansible package bundles it, or install it with '
                               'ansible-galaxy collection install awx.awx')
        rrule = awx.run(terms, variables=variables, **kwargs)
        return rrule if isinstance(rrule, list) else [rrule]
